//! The cgroup tree: which hierarchies are mounted ([`layout`]), which cgroups are containers
//! ([`path`], [`discovery`]), and their figures ([`stats`] choosing between the [`v1`] and
//! [`v2`] readers, all built on the file [`parse`]rs).

pub mod discovery;
pub mod layout;
pub mod parse;
pub mod path;
pub mod stats;
pub mod v1;
pub mod v2;

pub use discovery::{discover, Container};
pub use layout::{Hierarchies, Mode};
pub use path::ContainerRef;
pub use stats::{CgroupFiles, CpuStats, MemoryStats};
