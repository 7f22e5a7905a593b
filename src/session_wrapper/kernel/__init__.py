"""The thin kernel adapter: seccomp filter, notification ioctls, /proc reads, the session's
child process, privilege drop and reaping. It holds no policy: what to allow is decided in
session_wrapper.decision, and the supervisor wires the two together.
"""
