"""Self-supervised pretraining (``python -m hpnet.pretrain``): methods that learn a backbone from
unlabelled videos, whose encoder ``hpnet.train`` then fine-tunes (``model.pretrained=RUN/last.pt``).

* :mod:`hpnet.pretrain.videomae`: VideoMAE for LS-ViT (``pretrain.method=videomae``).
* :mod:`hpnet.pretrain.simsiam`: SimSiam's step, a 2D frame encoder (``pretrain.method=simsiam``).
* :mod:`hpnet.pretrain.setup`: what a run is made of (its checks, videos and model).
* :mod:`hpnet.pretrain.run`: the command (run folder, resume, AMP, torchrun as ``hpnet.train``).
* :mod:`hpnet.pretrain.preview`: ``--preview N``, a PNG of masked input, reconstruction, original.
"""
