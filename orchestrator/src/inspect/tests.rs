//! Timeline and blocked-on from histories built by hand.
