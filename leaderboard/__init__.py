"""The Streamlit leaderboard over the Parquet results (``idsuite leaderboard``) and paper export."""
