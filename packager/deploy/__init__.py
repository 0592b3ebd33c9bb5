"""Shipping a bundle to a device over SSH: reachability, provisioning, copy, remote install.

It may import ``edge.bundle`` and ``edge.device``; nothing else of the packager.
"""
