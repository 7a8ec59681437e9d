"""The application layer: the commands above the libraries (train, eval, sample, export, analyze,
experiment, sweep, report).

Each module here is one command's logic, callable from Python; ``gannorm.cli`` only parses arguments
and prints. Run folders are read and written through :mod:`gannorm.runfolder`.
"""
