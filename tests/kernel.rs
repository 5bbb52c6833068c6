//! Kernel tests (root): see tests/kernel/.
