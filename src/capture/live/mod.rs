//! Live capture from network interfaces. (Being written: this file states
//! the interface.)
