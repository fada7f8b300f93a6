"""order: order records, the state machine, consumers and periodic workers."""
