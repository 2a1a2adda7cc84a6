"""The dev cluster's node agent: a kubelet and container runtime stand-in.

It registers a Node, runs the Pods bound to it as local processes (each Pod in its own
network namespace, each container in its own mount namespace over an overlay of the
host root) and reports their status the way kubelet does. See docs/node-agent.md.
"""
