"""Kubernetes plumbing for KubernetesSource: connecting, trimming objects, list-then-watch."""
