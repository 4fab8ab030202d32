"""What a study is: its students, how a cell of them is trained and tracked, and how runs are summarised."""
