"""How much the MV jobs put in one pass and keep in memory: read by the jobs (moclip.mv.train,
moclip.mv.data) and by their resource estimates at parse time (moclip.workflow.resources), so it
imports nothing; a change here reruns the MV jobs, whose batches it shapes."""

EVAL_IMAGES = {"cpu": 192, "cuda": 1000}  # MV network inputs a forward pass at test and feature time

# Validation inputs read once a run and kept (moclip.mv.data.Kept): up to this share of a
# GPU's memory on the card, up to this many MB in a CPU job's memory (counted in its mem_mb).
KEPT_CARD_SHARE = 0.1
KEPT_HOST_MB = 1024
