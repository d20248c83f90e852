"""Everything a person reads: rich tables on the terminal, JSON for machines.

Text that came from the Hub or from a model passes through `reports.terminal.safe_text` before it
reaches a terminal.
"""
