"""A deck taken out of the product: one self-contained HTML file, or an editable PPTX."""
