"""Which logs are capture interfaces: the settings file, local discovery, the demo, remote VMs."""
