"""The meta level of MOF: the compressed-frame bank (``bank``, split over machines by ``shards``) and
the hypergradient step (``meta``).

Pure functions and state containers: no logging, no printing, no progress bars; the training loop
in ``mofkit.train`` does that.
"""
