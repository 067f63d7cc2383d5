"""`python -m pipeline.cli ...`: the same as `sftpipe ...`."""
from pipeline.cli import main

main()
