"""Input family: push (Icecast-style source), relay (pull a URL), file, generator.

Each builds a `FrameSource` for a `Programme`; live ones (push, relay) share `LiveSource`.
"""
