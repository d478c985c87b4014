"""Training a model repo: data folders -> splits (data), realistic training views (augment), two-stage
fine-tuning (finetune), the fitted guard (guard), honest evaluation (evaluation), the model card (card)
and the steps of one run (pipeline). Uses core/; nothing outside training/ and cli/ imports it."""
