"""The ablation cells of paper Tables 3-5 and the tables built from them."""
