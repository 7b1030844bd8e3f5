"""Training: recipes as data (freeze masks, per-group learning rates), optimizer, loss, the jitted sharded
step, metrics logging and the trainer loop."""
