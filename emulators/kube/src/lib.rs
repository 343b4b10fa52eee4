//! Kubernetes API emulator (in progress in a later change).
