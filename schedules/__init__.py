"""Time: the nightly cycle, planning under a budget, locking and the scheduler daemon.

Empty until the nightly-cycle issue lands; `auditor crawl` is run by hand or from cron meanwhile.
"""
