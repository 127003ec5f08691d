"""The all-MiniLM-L6-v2 ONNX export the real-model corpus makes from its safetensors weights: a hand check that the
trained weights were loaded by name and the graph takes dynamic batch and sequence (others build on this export)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from real_models import MINILM_HIDDEN, minilm_onnx, minilm_token_ids


def _sentence_embeddings(texts: list[str]) -> np.ndarray:
    """Mean-pooled, unit-length embeddings (sentence-transformers' recipe for this model), padded as one batch."""
    ids = [minilm_token_ids(t) for t in texts]
    width = max(map(len, ids))
    input_ids = np.zeros((len(ids), width), np.int64)
    mask = np.zeros_like(input_ids)
    for row, seq in enumerate(ids):
        input_ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    session = ort.InferenceSession(str(minilm_onnx()), providers=["CPUExecutionProvider"])
    (hidden,) = session.run(
        None, {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}
    )
    assert hidden.shape == (len(texts), width, MINILM_HIDDEN)
    assert np.isfinite(hidden).all()
    pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def test_tokenizer_uses_the_models_vocabulary():
    # BERT's uncased vocabulary: [CLS]=101, [SEP]=102, "the"=1996; an unseen word splits into ## pieces
    ids = minilm_token_ids("The cat")
    assert ids[0] == 101 and ids[-1] == 102 and ids[1] == 1996
    assert len(minilm_token_ids("unbelievablyness")) > 3


def test_export_has_dynamic_batch_and_sequence_inputs():
    model = onnx.load(str(minilm_onnx()), load_external_data=False)
    inputs = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    assert inputs == {name: ["batch", "sequence"] for name in ("input_ids", "attention_mask", "token_type_ids")}
    assert sum(n.op_type == "MatMul" for n in model.graph.node) >= 6 * 6  # q, k, v, qk, av, out per layer (+ FFN)


def test_trained_weights_place_related_sentences_closer():
    a, b, c, d = _sentence_embeddings(
        [
            "A man is playing a guitar.",
            "Someone plays an acoustic guitar on stage.",
            "The stock market fell sharply today.",
            "A man is playing a guitar.",
        ]
    )
    related, unrelated = float(a @ b), float(a @ c)
    assert related > unrelated + 0.3, (related, unrelated)  # random weights give cosines all near one another
    # padding must not change a sentence's embedding (the attention mask reaches every layer)
    np.testing.assert_allclose(a, d, atol=1e-5)
    (alone,) = _sentence_embeddings(["A man is playing a guitar."])
    np.testing.assert_allclose(a, alone, atol=1e-4)
