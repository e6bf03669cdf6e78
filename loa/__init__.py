"""Loa: the IP loudspeaker broadcast server for commune radio (đài truyền thanh cơ sở)."""

__version__ = "0.1.0"
