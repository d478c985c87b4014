"""Gradio's own floor: the same kind of endpoint (image file in, batched, Label out) doing nothing."""

import gradio as gr


def classify(paths):
    return [[{"a": 0.5, "b": 0.5} for _ in paths]]


with gr.Blocks() as demo:
    image = gr.Image(type="filepath", image_mode=None)
    label = gr.Label()
    gr.Button("Classify").click(classify, image, label, api_name="classify", batch=True, max_batch_size=16)
demo.queue(default_concurrency_limit=1)

if __name__ == "__main__":
    demo.launch()
