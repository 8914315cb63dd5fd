"""ctr_plugin.experiments"""
