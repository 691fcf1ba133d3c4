"""``python -m hpnet.pretrain``: see :mod:`hpnet.pretrain.run`."""

from hpnet.pretrain.run import cli

if __name__ == "__main__":
    cli()
