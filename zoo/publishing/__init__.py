"""Publishing: versions trained or exported with their model card beside them; what zoo.train and zoo.export call."""
