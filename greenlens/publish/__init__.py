"""Publishing to the Hugging Face Hub: a model repo with its card and held-out examples (models), the
demo as a Space (space), both through one upload that makes a repo's files exactly a folder's (hub).
Uses core/ and training/'s card; only cli/ imports it."""
