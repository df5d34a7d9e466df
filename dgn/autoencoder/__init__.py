"""The denoising autoencoder whose decoder becomes the pretrained generator (paper section 3.3): the
model (:mod:`.model`), its optimizer and losses (:mod:`.schedule`), norm statistics (:mod:`.norms`),
training (:mod:`.training`), the trained folder and its export (:mod:`.files`), evaluation
(:mod:`.evaluate`)."""
