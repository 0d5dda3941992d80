//! Support shared by the console's integration tests.

pub mod webdriver;
