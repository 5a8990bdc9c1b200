"""Training recipes: `color` (pix2pix colouriser) and `sr` (SRGAN). Each recipe is one file
that reads top to bottom: data -> step -> log -> checkpoint; shared pieces live in common.py."""
