"""Networks and the pieces they share (embedding + masking, time features, ODE integration)."""
