"""ctr_plugin.bench"""
