from shapely.geometry.base import BaseGeometry as BaseGeometry
from shapely.geometry.linestring import LineString as LineString
from shapely.geometry.multipolygon import MultiPolygon as MultiPolygon
from shapely.geometry.point import Point as Point
from shapely.geometry.polygon import Polygon as Polygon
