"""ctr_plugin.continual"""
