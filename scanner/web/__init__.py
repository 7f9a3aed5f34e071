"""`scanner web`: a web GUI over the result store that also runs scans (what Zenmap is to nmap)."""
