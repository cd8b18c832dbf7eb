//! Wire types shared by more than one Strata crate, kept free of any other dependency so that
//! a small binary (the node agent) can use them without pulling in the storage node.

pub mod remote_write;
