"""ctr_plugin.reporting"""
