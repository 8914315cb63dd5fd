"""ctr_plugin.modeling"""
