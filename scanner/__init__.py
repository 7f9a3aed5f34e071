"""scanner: nmap scan techniques and port states at masscan/zmap speed."""
__version__ = "0.1.0"
