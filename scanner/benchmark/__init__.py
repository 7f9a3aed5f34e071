"""scanner bench: scanner against nmap, masscan and zmap in the namespace lab (scanner.lab), with a
report (Markdown, JSON, plots, one HTML page).

    measure    runs one tool in the lab's scanner namespace: wall time, packets sent and the send
               phase (tx counter sampler), packets that reached the target, CPU (wait4)
    tools      each tool's argv for a scan, and its output parsed into {(address, port): state}
    workloads  the named workloads: their lab, their variants, which tools run them
    runner     builds each workload's lab once, runs its variants x tools x repetitions in turn
    stats      medians with min and max, ratios against each peer
    report     Markdown, JSON, PNG plots (matplotlib, the `bench` extra) and an HTML page
    cli        the `scanner bench` command
"""
