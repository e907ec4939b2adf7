"""Zero-shot classification of one split's test videos from the CLIP embedding shards."""

from moclip.clip_stream import DEFAULT_TEMPLATES, evaluate_zeroshot, load_clip
from moclip.io import log_to, use_threads
from moclip.manifest import read_manifest
from moclip.metrics import write_json, write_predictions

log_to(snakemake.log[0])
use_threads(snakemake.threads)
p = snakemake.params
clip = load_clip(p.model, p.pretrained, seed=p.seed)
split = int(snakemake.wildcards.split)
ids, labels, scores, names, metrics = evaluate_zeroshot(
    clip, read_manifest(snakemake.input.manifest), snakemake.input.shards, split,
    p.templates or DEFAULT_TEMPLATES, p.device,
)
write_predictions(snakemake.output.predictions, ids, labels, scores, names)
write_json(snakemake.output.metrics, {"method": "zeroshot", "split": split, "model": p.model,
                                      "pretrained": p.pretrained, "weights_digest": clip.weights_digest,
                                      **metrics})
