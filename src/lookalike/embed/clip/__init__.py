"""CLIP models (``clip:ARCH[/TAG]``, #10) through open_clip: the names (:mod:`.names`,
no torch), the weights (:mod:`.weights`), the image tower as an embedder
(:mod:`.embedder`, :mod:`.towers`), and the text side (:mod:`.tokenizer`, :mod:`.text`).
Nothing is imported here: a text query must not pay for torch."""
