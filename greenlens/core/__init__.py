"""What a classifier is and how it answers: the tasks (as data), image decoding, the backbones, model
repos on disk and on the Hub, the out-of-distribution guard and the quality check, inference (Keras,
LiteRT, ONNX) and explanations. Imports nothing from training/, survey/ or cli/; the modules that need
TensorFlow (backbones, inference, explain) import it themselves, so `greenlens.core.repository`,
`greenlens.core.litert` and `greenlens.core.images` stay usable without it."""
