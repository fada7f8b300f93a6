from analytics.bootstrap import bootstrap
from analytics.settings import AnalyticsSettings
from mesh.process import run_service

if __name__ == "__main__":
    run_service("analytics", AnalyticsSettings, bootstrap)
