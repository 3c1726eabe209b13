"""Tables, figures and the report document; reads stage outputs, imports no model code."""
