"""Training recipes: `color` (pix2pix colouriser) and `sr` (SRGAN). Both run one skeleton,
loop.train (data -> step -> log -> validate -> checkpoint, top to bottom); each recipe file
(color.py, sr.py) supplies its photos, networks, step and validation. Their settings are
recipes.py's dataclasses; losses.py holds the loss terms; data.py, runlog.py, distributed.py
and schedule.py the photos, the run folder, the processes and the step plan."""
