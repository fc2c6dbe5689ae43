"""The results layer: the store, its schema, cell identity, selection and summaries.

Both the runners (which write cells) and the leaderboard (which reads them) import this package;
it imports neither of them, nor torch.
"""
