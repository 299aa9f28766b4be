"""Demo and test data: the legacy billing database the PAY-10 backfill starts from (not product code paths)."""
