"""ctr_plugin.checkpoint"""
