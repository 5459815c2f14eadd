"""Two-view (DUSt3R-style) reconstruction: pair graphs, pair inference, global alignment."""
